"""Demo data for `fenxiao demo`: a small catalog with stock in two warehouses."""
from __future__ import annotations

from commands import Fenxiao
from commands.app import CommandContext

WAREHOUSES = [
    ("WH-EAST", "Shanghai Qingpu", "east"),
    ("WH-SOUTH", "Guangzhou Baiyun", "south"),
]
PRODUCTS = [
    ("TEA-LJ-250", "West Lake Longjing tea", "250 g tin", 12800, 7600),
    ("TEA-PE-357", "Pu'er cake", "357 g", 26800, 15500),
    ("CUP-GW-6", "Celadon tea cups", "set of 6", 9900, 5200),
    ("SET-TRAVEL", "Travel tea set", "1 pot, 2 cups", 15900, 8800),
]
RECEIPTS = [
    ("TEA-LJ-250", "WH-EAST", 120), ("TEA-LJ-250", "WH-SOUTH", 40),
    ("TEA-PE-357", "WH-SOUTH", 60), ("CUP-GW-6", "WH-EAST", 80),
    ("SET-TRAVEL", "WH-EAST", 25), ("SET-TRAVEL", "WH-SOUTH", 10),
]


def load_demo(app: Fenxiao) -> int:
    """Record the demo catalog through the ordinary commands; return the last position."""
    context = CommandContext(actor="demo")
    run = lambda command: app.execute(command, context=context).body["position"]  # noqa: E731
    for warehouse_id, name, region in WAREHOUSES:
        run(lambda: app.open_warehouse(warehouse_id, name, region))
    for sku, name, spec, price, wholesale in PRODUCTS:
        run(lambda: app.add_product(sku, name, spec, price, wholesale))
    for n, (sku, warehouse_id, quantity) in enumerate(RECEIPTS, 1):
        run(lambda: app.receive_stock(sku, warehouse_id, quantity, f"DEMO-PO-{n:03d}"))
    run(lambda: app.adjust_stock("CUP-GW-6", "WH-EAST", -2, "broken in handling"))
    return run(lambda: app.transfer_stock("TEA-LJ-250", "WH-EAST", "WH-SOUTH", 20))
