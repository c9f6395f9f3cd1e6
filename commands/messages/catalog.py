"""Catalog and stock: warehouses, products, and the stock in each warehouse."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class OpenWarehouse(Command):
    status = 201
    warehouse_id: str
    warehouse_name: str  # not `name`: that is the command's own name
    region: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.open_warehouse(warehouse_id=self.warehouse_id, name=self.warehouse_name,
                                  region=self.region)


@dataclass(frozen=True)
class AddProduct(Command):
    status = 201
    sku: str
    product_name: str  # not `name`: that is the command's own name
    spec: str
    price_minor: int
    wholesale_price_minor: int | None = None
    listed: bool = True

    def handle(self, app: Any) -> dict[str, Any]:
        return app.add_product(self.sku, self.product_name, self.spec, self.price_minor,
                               self.wholesale_price_minor, self.listed)


@dataclass(frozen=True)
class ChangePrice(Command):
    sku: str
    price_minor: int

    def handle(self, app: Any) -> dict[str, Any]:
        return app.change_price(self.sku, self.price_minor)


@dataclass(frozen=True)
class DelistProduct(Command):
    sku: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.delist_product(self.sku)


@dataclass(frozen=True)
class ListProduct(Command):
    sku: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.list_product(self.sku)


@dataclass(frozen=True)
class ReceiveStock(Command):
    status = 201
    sku: str
    warehouse_id: str
    quantity: int
    reference: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.receive_stock(sku=self.sku, warehouse_id=self.warehouse_id,
                                 quantity=self.quantity, reference=self.reference)


@dataclass(frozen=True)
class AdjustStock(Command):
    status = 201
    sku: str
    warehouse_id: str
    delta: int
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.adjust_stock(sku=self.sku, warehouse_id=self.warehouse_id,
                                delta=self.delta, reason=self.reason)


@dataclass(frozen=True)
class TransferStock(Command):
    status = 201
    sku: str
    from_warehouse_id: str
    to_warehouse_id: str
    quantity: int

    def handle(self, app: Any) -> dict[str, Any]:
        return app.transfer_stock(sku=self.sku, from_warehouse_id=self.from_warehouse_id,
                                  to_warehouse_id=self.to_warehouse_id,
                                  quantity=self.quantity)
