"""Catalog and stock commands."""
from __future__ import annotations

from typing import Any
from uuid import uuid4

from commands.app import CoreApp
from commands.views import product_view, stock_view, warehouse_view
from domain.catalog import Product, Warehouse
from domain.errors import Duplicate
from domain.stock import SameWarehouse, StockItem


class CatalogService(CoreApp):
    def open_warehouse(self, warehouse_id: str, name: str, region: str) -> dict[str, Any]:
        if self.exists(Warehouse.create_id(warehouse_id)):
            raise Duplicate(f"warehouse {warehouse_id} already exists",
                            warehouse_id=warehouse_id)
        warehouse = Warehouse(warehouse_id=warehouse_id, name=name, region=region)
        return {**warehouse_view(warehouse), "position": self.record(warehouse)}

    def add_product(self, sku: str, name: str, spec: str, price_minor: int,
                    wholesale_price_minor: int | None = None, listed: bool = True,
                    ) -> dict[str, Any]:
        if self.exists(Product.create_id(sku)):
            raise Duplicate(f"product {sku} already exists", sku=sku)
        product = Product.add(sku, name, spec, price_minor, wholesale_price_minor,
                              self.settings.currency, listed)
        return {**product_view(product), "position": self.record(product)}

    def change_price(self, sku: str, price_minor: int) -> dict[str, Any]:
        product = self.product(sku)
        product.change_price(price_minor)
        return {**product_view(product), "position": self.record(product)}

    def delist_product(self, sku: str) -> dict[str, Any]:
        product = self.product(sku)
        product.delist()
        return {**product_view(product), "position": self.record(product)}

    def list_product(self, sku: str) -> dict[str, Any]:
        product = self.product(sku)
        product.relist()
        return {**product_view(product), "position": self.record(product)}

    def product(self, sku: str) -> Product:
        return self.load(Product.create_id(sku), f"product {sku}", sku=sku)

    def warehouse(self, warehouse_id: str) -> Warehouse:
        return self.load(Warehouse.create_id(warehouse_id), f"warehouse {warehouse_id}",
                         warehouse_id=warehouse_id)


# Movements that put stock into a warehouse: the SKU's product must list that warehouse.
STOCKING_MOVES = ("receive", "adjust", "restock")


class StockService(CatalogService):
    def stock_item(self, sku: str, warehouse_id: str) -> StockItem:
        """The stock item, opened (not yet saved) if this is its first movement."""
        return self._stock_item(sku, warehouse_id, stocking=False)[0]

    def _stock_item(self, sku: str, warehouse_id: str, stocking: bool = True
                    ) -> tuple[StockItem, Product | None]:
        """The stock item and, when the product does not yet list its warehouse, the
        product with the warehouse recorded: the caller saves both together, so the
        write-side index of where a SKU is stocked never misses a stock item. An item
        opened before that index existed is recorded at its next `stocking` movement."""
        item = self.find(StockItem.create_id(sku, warehouse_id))
        if item is not None and not stocking:
            return item, None
        product = self.product(sku)
        if item is not None and warehouse_id in product.stocked_at:
            return item, None
        product.record_stock_location(warehouse_id, self.warehouse(warehouse_id).region)
        return item or StockItem(sku=sku, warehouse_id=warehouse_id), product

    def receive_stock(self, sku: str, warehouse_id: str, quantity: int,
                      reference: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "receive", quantity, reference)

    def adjust_stock(self, sku: str, warehouse_id: str, delta: int,
                     reason: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "adjust", delta, reason)

    def transfer_stock(self, sku: str, from_warehouse_id: str, to_warehouse_id: str,
                       quantity: int) -> dict[str, Any]:
        if from_warehouse_id == to_warehouse_id:
            raise SameWarehouse("cannot transfer to the same warehouse",
                                warehouse_id=from_warehouse_id)
        transfer_id = uuid4().hex
        source = self.stock_item(sku, from_warehouse_id)  # a new one has nothing to send
        target, product = self._stock_item(sku, to_warehouse_id)
        source.transfer_out(quantity, to_warehouse_id, transfer_id)
        target.transfer_in(quantity, from_warehouse_id, transfer_id)
        return {"transfer_id": transfer_id, "sku": sku, "quantity": quantity,
                "from": stock_view(source), "to": stock_view(target),
                "position": self.record(source, target, *filter(None, [product]))}

    def _move(self, sku: str, warehouse_id: str, move: str, quantity: int,
              note: str) -> dict[str, Any]:
        """One movement on one stock item: `move` names the StockItem command."""
        item, product = self._stock_item(sku, warehouse_id, move in STOCKING_MOVES)
        getattr(item, move)(quantity, note)
        return {**stock_view(item),
                "position": self.record(item, *filter(None, [product]))}

    def reserve_stock(self, sku: str, warehouse_id: str, quantity: int,
                      reference: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "reserve", quantity, reference)

    def release_stock(self, sku: str, warehouse_id: str, quantity: int,
                      reference: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "release", quantity, reference)

    def issue_stock(self, sku: str, warehouse_id: str, quantity: int,
                    reference: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "issue", quantity, reference)

    def restock(self, sku: str, warehouse_id: str, quantity: int,
                reference: str) -> dict[str, Any]:
        return self._move(sku, warehouse_id, "restock", quantity, reference)
