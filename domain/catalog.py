"""Warehouses and products."""
from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidCommand, InvalidTransition
from domain.ids import natural_id


class Warehouse(Aggregate):
    @staticmethod
    def create_id(warehouse_id: str) -> UUID:
        return natural_id("warehouse", warehouse_id)

    @event("WarehouseOpened")
    def __init__(self, warehouse_id: str, name: str, region: str) -> None:
        self.warehouse_id = warehouse_id
        self.name = name
        self.region = region


class Product(Aggregate):
    @staticmethod
    def create_id(sku: str) -> UUID:
        return natural_id("product", sku)

    @classmethod
    def add(cls, sku: str, name: str, spec: str, price_minor: int,
            wholesale_price_minor: int | None, currency: str, listed: bool) -> "Product":
        _check_price(price_minor, "price")
        if wholesale_price_minor is not None:
            _check_price(wholesale_price_minor, "wholesale_price")
        return cls(sku=sku, name=name, spec=spec, price_minor=price_minor,
                   wholesale_price_minor=wholesale_price_minor, currency=currency,
                   listed=listed)

    @event("ProductAdded")
    def __init__(self, sku: str, name: str, spec: str, price_minor: int,
                 wholesale_price_minor: int | None, currency: str, listed: bool) -> None:
        self.sku = sku
        self.name = name
        self.spec = spec
        self.price_minor = price_minor
        self.wholesale_price_minor = wholesale_price_minor
        self.currency = currency
        self.listed = listed
        # warehouse id -> its region: where a stock item of this SKU exists. The write-side
        # index placing an order allocates from (the inventory projection may lag).
        self.stocked_at: dict[str, str] = {}

    def record_stock_location(self, warehouse_id: str, region: str) -> None:
        """A stock item of this SKU is opened in `warehouse_id` (a no-op if known)."""
        if warehouse_id not in self.stocked_at:
            self._stock_location_recorded(warehouse_id=warehouse_id, region=region)

    @event("StockLocationRecorded")
    def _stock_location_recorded(self, warehouse_id: str, region: str) -> None:
        self.stocked_at[warehouse_id] = region

    def change_price(self, price_minor: int) -> None:
        _check_price(price_minor, "price")
        if price_minor != self.price_minor:
            self._price_changed(price_minor=price_minor, previous_minor=self.price_minor)

    @event("PriceChanged")
    def _price_changed(self, price_minor: int, previous_minor: int) -> None:
        self.price_minor = price_minor

    def delist(self) -> None:
        if not self.listed:
            raise InvalidTransition(f"product {self.sku} is already delisted", sku=self.sku)
        self._delisted()

    @event("ProductDelisted")
    def _delisted(self) -> None:
        self.listed = False

    def relist(self) -> None:
        if self.listed:
            raise InvalidTransition(f"product {self.sku} is already listed", sku=self.sku)
        self._listed()

    @event("ProductListed")
    def _listed(self) -> None:
        self.listed = True


def _check_price(amount_minor: int, field: str) -> None:
    if amount_minor < 0:
        raise InvalidCommand(f"{field} must not be negative", field=field)
