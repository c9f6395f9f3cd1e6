"""Measure Fenxiao against raw database baselines, in one run against one database.

Prints one JSON object per line on stdout:
{"metric", "value", "unit", "baseline_metric", "ratio"} (ratio = value / baseline, both
measured in this run; no baseline fields where there is none). Notes go to stderr.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from benchmarks import raw
from commands import Fenxiao
from commands.settings import Settings
from domain.stock import StockItem
from migrations import upgrade
from projections.inventory import InventoryProjection, inventory
from projections.runner import ProjectionRunner


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(metric: str, value: float, unit: str, baselines: dict[str, float],
         baseline: str | None = None) -> None:
    row: dict[str, Any] = {"metric": metric, "value": round(value, 3), "unit": unit}
    if baseline:
        row["baseline_metric"] = baseline
        row["ratio"] = round(value / baselines[baseline], 3)
    print(json.dumps(row), flush=True)


def prepare(url: str, wipe_ok: bool) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        name = parsed.database or ""
        if not wipe_ok and "bench" not in name and "test" not in name:
            raise SystemExit(f"refusing to wipe database {name!r}: its name has neither "
                             "'bench' nor 'test' (pass --yes-wipe to insist)")
        note(f"wiping every Fenxiao table in {parsed.render_as_string()}")
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def rate(count: int, action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return count / (time.perf_counter() - started)


def stock_commands(app: Fenxiao, count: int) -> float:
    skus = [f"BENCH-{n:03d}" for n in range(50)]
    for w in ("WB1", "WB2"):
        app.execute(lambda: app.open_warehouse(w, w, "east"))
    for sku in skus:
        app.execute(lambda: app.add_product(sku, sku, "", 100))
        for w in ("WB1", "WB2"):
            app.execute(lambda: app.receive_stock(sku, w, 1_000_000, "opening stock"))

    def run() -> None:
        for n in range(count):
            sku, w = skus[n % len(skus)], ("WB1", "WB2")[n % 2]
            if n % 3 == 2:  # a reservation and its release, besides the receipts
                app.execute(lambda: app.reserve_stock(sku, w, 1, f"O-{n}"))
            else:
                app.execute(lambda: app.receive_stock(sku, w, 5, f"PO-{n}"))
    return rate(count, run)


def ledger_postings(app: Fenxiao, count: int) -> float:
    """Rounds of accrual, maturity, withdrawal request and approval: four commands, each
    posting one balanced entry (and moving a wallet), so postings per second."""
    for n in range(10):
        app.execute(lambda: app.apply_distributor(f"B{n}", f"1390000{n:04d}", None, f"B{n}"))
        app.execute(lambda: app.approve_distributor(f"B{n}"))

    def run() -> None:
        for n in range(count // 4):
            who = f"B{n % 10}"
            app.execute(lambda: app.accrue_commission(f"BO-{n}", 1, "TEA", 1, 100_000, who))
            app.execute(lambda: app.mature_commission(f"BO-{n}", 1))
            app.execute(lambda: app.request_withdrawal(who, 1000, f"BW-{n}"))
            app.execute(lambda: app.approve_withdrawal(f"BW-{n}", "BANK"))
    return rate(count // 4 * 4, run)


def backlog(app: Fenxiao, events: int, prefix: str, per_item: int = 50,
            per_save: int = 2000) -> int:
    """Write `events` real StockItem events through the application, in big saves."""
    written, items, pending = 0, 0, []
    while written < events:
        item = StockItem(sku=f"{prefix}-{items:06d}", warehouse_id="WB1")
        items += 1
        written += 1
        for n in range(min(per_item, events - written)):
            (item.receive if n % 4 != 3 else item.reserve)(3, f"R-{n}")
            written += 1
        pending.append(item)
        if sum(len(i.pending_events) for i in pending) >= per_save:
            app.save(*pending)
            pending = []
    if pending:
        app.save(*pending)
    return items


def catch_up(app: Fenxiao, batch_size: int) -> float:
    runner = ProjectionRunner(app, [InventoryProjection()], batch_size=batch_size)
    head = app.last_position()
    return rate(head, lambda: runner.rebuild(InventoryProjection.name))


def peak_mib(action: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh temporary SQLite file")
    parser.add_argument("--events", type=int, default=100_000, help="projection backlog")
    parser.add_argument("--commands", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--yes-wipe", action="store_true")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{Path(scratch.name) / 'bench.db'}"
    prepare(url, args.yes_wipe)
    note(f"database: {make_url(url).get_backend_name()}; raw baselines")
    base = raw.measure(url, single_rows=args.commands, batched_rows=args.events)
    emit("raw_single_row_commit", base["raw_single_row_commit"], "rows/s", base)
    emit("raw_batched_insert", base["raw_batched_insert"], "rows/s", base)

    app = Fenxiao(Settings(database_url=url, projection_batch_size=args.batch_size))
    try:
        note(f"{args.commands} stock commands through the application")
        emit("stock_commands", stock_commands(app, args.commands), "commands/s", base,
             "raw_single_row_commit")
        note(f"{args.commands} ledger postings through the application")
        emit("ledger_postings", ledger_postings(app, args.commands), "postings/s", base,
             "raw_single_row_commit")
        note(f"writing a backlog of {args.events} events")
        tenth = max(args.events // 10, 1)
        backlog(app, tenth, "BL1")
        small_peak = peak_mib(lambda: catch_up(app, args.batch_size))
        backlog(app, args.events - tenth, "BL2")
        note(f"catching up {app.last_position()} events from zero")
        emit("projection_catch_up", catch_up(app, args.batch_size), "events/s", base,
             "raw_batched_insert")
        check(app)
        full_peak = peak_mib(lambda: catch_up(app, args.batch_size))
        emit("projection_catch_up_peak_memory", full_peak, "MiB", base)
        emit("projection_catch_up_memory_growth", full_peak - small_peak, "MiB", base)
    finally:
        app.close()
        scratch.cleanup()


def check(app: Fenxiao) -> None:
    """The catch-up must have produced exactly what the aggregates hold."""
    with app.engine.connect() as conn:
        on_hand, reserved = conn.execute(
            select(func.sum(inventory.c.on_hand), func.sum(inventory.c.reserved))).one()
    events = app.recorder.events_record_cls.__table__
    expected = [0, 0]
    with app.engine.connect() as conn:
        for (originator_id,) in conn.execute(select(events.c.originator_id).distinct()
                                             .where(events.c.topic.like("%StockItem%"))):
            item = app.repository.get(originator_id)
            expected[0] += item.on_hand
            expected[1] += item.reserved
    if [on_hand, reserved] != expected:
        raise SystemExit(f"inventory projection {[on_hand, reserved]} != aggregates {expected}")


if __name__ == "__main__":
    main()
