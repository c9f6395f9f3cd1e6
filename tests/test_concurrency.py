"""Concurrent commands on one stock item: bounded optimistic retries keep the invariants."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from commands import Fenxiao
from domain.errors import InsufficientStock
from domain.stock import StockItem


def test_twenty_parallel_reservations_from_ten(app: Fenxiao) -> None:
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    app.execute(lambda: app.add_product("TEA", "Tea", "", 100))
    app.execute(lambda: app.receive_stock("TEA", "W1", 10, "PO"))

    def reserve(n: int) -> str:
        try:
            app.execute(lambda: app.reserve_stock("TEA", "W1", 1, f"O-{n}"))
            return "reserved"
        except InsufficientStock:
            return "insufficient_stock"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(reserve, range(20)))
    assert outcomes.count("reserved") == 10
    assert outcomes.count("insufficient_stock") == 10
    item = app.repository.get(StockItem.create_id("TEA", "W1"))
    assert (item.on_hand, item.reserved, len(item.reservations)) == (10, 10, 10)


def test_parallel_transfers_never_overdraw(app: Fenxiao) -> None:
    for w in ("W1", "W2"):
        app.execute(lambda: app.open_warehouse(w, w, "east"))
    app.execute(lambda: app.add_product("TEA", "Tea", "", 100))
    app.execute(lambda: app.receive_stock("TEA", "W1", 7, "PO"))
    app.execute(lambda: app.receive_stock("TEA", "W2", 7, "PO"))

    def transfer(n: int) -> bool:
        source, target = ("W1", "W2") if n % 2 else ("W2", "W1")
        try:
            app.execute(lambda: app.transfer_stock("TEA", source, target, 2))
            return True
        except InsufficientStock:
            return False

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(transfer, range(24)))
    w1 = app.repository.get(StockItem.create_id("TEA", "W1"))
    w2 = app.repository.get(StockItem.create_id("TEA", "W2"))
    assert w1.on_hand >= 0 and w2.on_hand >= 0
    assert w1.on_hand + w2.on_hand == 14
