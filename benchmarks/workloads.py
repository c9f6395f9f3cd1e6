"""What the benchmark runs through the real application: stock commands, a stock-event
backlog written in big saves, and timed catch-ups of the inventory projection over it.

Every workload keeps the stock levels it expects per stock item, so the read model the
catch-up produced can be checked against what was written (`verify`)."""
from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import delete, func, select

from commands import Fenxiao
from commands.storage import tracking
from domain.stock import StockItem
from projections.inventory import InventoryProjection, inventory
from projections.runner import ProjectionRunner

# stock item id (as the read model keys it) -> [on_hand, reserved]
Expected = dict[str, list[int]]
WAREHOUSES = ("WB1", "WB2")


def stock_commands(app: Fenxiao, count: int, expected: Expected, skus: int = 50) -> float:
    """`count` commands through `app.execute`, spread over `skus` SKUs x 2 warehouses;
    return commands per second. Setup (warehouses, products, opening stock) is untimed.

    Command n goes to stock item n % items, so consecutive commands touch different items;
    each item cycles through receive 5, reserve 2, receive 5, release 1 of those 2."""
    names = [f"BENCH-{n:03d}" for n in range(skus)]
    items = [(sku, w) for sku in names for w in WAREHOUSES]
    for w in WAREHOUSES:
        app.execute(lambda: app.open_warehouse(w, w, "east"))
    for sku in names:
        app.execute(lambda: app.add_product(sku, sku, "bench", 100))
    for sku, w in items:
        app.execute(lambda: app.receive_stock(sku, w, 1_000, "opening stock"))
        expected[str(StockItem.create_id(sku, w))] = [1_000, 0]

    def run() -> None:
        for n in range(count):
            sku, w = items[n % len(items)]
            turn, phase = divmod(n // len(items), 4)
            ref = f"O-{turn}"
            if phase in (0, 2):
                app.execute(lambda: app.receive_stock(sku, w, 5, f"PO-{n}"))
                delta = (5, 0)
            elif phase == 1:
                app.execute(lambda: app.reserve_stock(sku, w, 2, ref))
                delta = (0, 2)
            else:
                app.execute(lambda: app.release_stock(sku, w, 1, ref))
                delta = (0, -1)
            level = expected[str(StockItem.create_id(sku, w))]
            level[0] += delta[0]
            level[1] += delta[1]

    return count / timed(run)


def write_backlog(app: Fenxiao, events: int, expected: Expected, per_item: int = 10,
                  items_per_save: int = 1_000) -> int:
    """Write `events` real StockItem events with `app.save`, about `items_per_save` events
    per save; return how many stock items they belong to.

    Items are made `items_per_save` at a time and move in rounds: each round gives every
    item of the group one event (opened, then receive 7 / reserve 3 / receive 5 / release
    1 of those 3, ...) and saves the group, so the log interleaves items the way live
    traffic does (a catch-up batch of 2,000 events touches 1,000 items, not 200).
    `per_item` stays under the snapshotting interval (20): no snapshots while writing."""
    quotas = [per_item] * (events // per_item) + ([events % per_item] if events % per_item
                                                  else [])
    written = 0
    for first in range(0, len(quotas), items_per_save):
        group = [(StockItem(sku=f"BL-{first + k:07d}", warehouse_id="WB1"), quota)
                 for k, quota in enumerate(quotas[first:first + items_per_save])]
        made = [item for item, _ in group]
        for turn in range(1, per_item + 1):  # round 0 was the StockItemOpened events
            app.save(*(item for item, _ in group))
            written += sum(1 for _, quota in group if quota >= turn)
            group = [(item, quota) for item, quota in group if quota > turn]
            for item, _ in group:
                move = turn % 4
                if move == 1:
                    item.receive(7, f"PO-{turn}")
                elif move == 2:
                    item.reserve(3, f"O-{turn}")
                elif move == 3:
                    item.receive(5, f"PO-{turn}")
                else:
                    item.release(1, f"O-{turn - 2}")
        for item in made:  # every event of the group is saved by now
            expected[str(item.id)] = [item.on_hand, item.reserved]
    assert written == events, (written, events)
    return len(quotas)


def projected_events(app: Fenxiao) -> int:
    """Events in the log that the inventory projection reads."""
    events = app.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events).where(
            events.c.topic.in_(InventoryProjection.topics()))).scalar_one()


def reset_inventory(app: Fenxiao) -> None:
    """Empty the read model and forget its position: the next catch-up starts at zero."""
    with app.datastore.transaction(commit=True) as session:
        conn = session.connection()
        InventoryProjection().clear(conn)
        conn.execute(delete(tracking).where(tracking.c.name == InventoryProjection.name))


def catch_up(app: Fenxiao, batch_size: int,
             progress: Callable[[int], None] | None = None) -> float:
    """Seconds for a fresh runner to catch the inventory projection up from zero."""
    reset_inventory(app)
    runner = ProjectionRunner(app, [InventoryProjection()], batch_size=batch_size)
    return timed(lambda: runner.catch_up(progress=progress))


@dataclass
class MemoryProfile:
    first_half_peak_mib: float
    second_half_peak_mib: float

    @property
    def peak_mib(self) -> float:
        return max(self.first_half_peak_mib, self.second_half_peak_mib)

    @property
    def growth_mib(self) -> float:
        return self.second_half_peak_mib - self.first_half_peak_mib


def catch_up_memory(app: Fenxiao, batch_size: int) -> MemoryProfile:
    """One catch-up from zero under tracemalloc: the peak while the first half of the log
    is applied, then (peak reset at half-way) the peak while the second half is."""
    head = app.last_position()
    done = 0
    first_half: list[float] = []

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if not first_half and done >= head / 2:
            first_half.append(tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.reset_peak()

    reset_inventory(app)
    runner = ProjectionRunner(app, [InventoryProjection()], batch_size=batch_size)
    gc.collect()
    tracemalloc.start()
    try:
        runner.catch_up(progress=progress)
        second = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    if not first_half:  # a single batch covered everything
        first_half.append(second)
    return MemoryProfile(first_half[0], second)


def verify(app: Fenxiao, expected: Expected) -> list[int]:
    """Fail loudly unless rm_inventory holds exactly the stock levels that were written,
    item by item; return the [on_hand, reserved] totals."""
    with app.engine.connect() as conn:
        rows = {r.stock_item_id: [r.on_hand, r.reserved] for r in conn.execute(
            select(inventory.c.stock_item_id, inventory.c.on_hand, inventory.c.reserved))}
    totals = [sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values())]
    wanted = [sum(v[0] for v in expected.values()), sum(v[1] for v in expected.values())]
    wrong = [item for item in expected.keys() | rows.keys()
             if rows.get(item) != expected.get(item)]
    if wrong or totals != wanted:
        raise SystemExit(
            f"FAILED: rm_inventory does not match the events written: {len(rows)} items, "
            f"totals on_hand/reserved {totals} (expected {len(expected)} items, {wanted}); "
            f"{len(wrong)} items differ, e.g. {sorted(wrong)[:3]}")
    return totals


def timed(action: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
