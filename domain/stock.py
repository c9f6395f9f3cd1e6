"""One SKU in one warehouse: on_hand, reserved, available = on_hand - reserved.

Invariants, checked before any event is triggered: on_hand >= 0 and
0 <= reserved <= on_hand. Reservations are held per reference (an order id) so a
release or an issue can never exceed what that reference reserved.
"""
from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InsufficientStock, InvalidCommand
from domain.ids import natural_id


class SameWarehouse(DomainError):
    """A transfer names one warehouse twice (a rule of stock, not of the request's shape)."""

    code = "same_warehouse"


class StockItem(Aggregate):
    @staticmethod
    def create_id(sku: str, warehouse_id: str) -> UUID:
        return natural_id("stock", sku, warehouse_id)

    @event("StockItemOpened")
    def __init__(self, sku: str, warehouse_id: str) -> None:
        self.sku = sku
        self.warehouse_id = warehouse_id
        self.on_hand = 0
        self.reserved = 0
        self.reservations: dict[str, int] = {}

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    # -- commands ---------------------------------------------------------------

    def receive(self, quantity: int, reference: str) -> None:
        _positive(quantity)
        self._received(quantity=quantity, reference=reference)

    def adjust(self, delta: int, reason: str) -> None:
        if delta == 0:
            raise InvalidCommand("delta must not be zero", field="delta")
        if not reason.strip():
            raise InvalidCommand("an adjustment needs a reason", field="reason")
        if delta < 0:
            self._require_available(-delta)
        self._adjusted(delta=delta, reason=reason)

    def transfer_out(self, quantity: int, to_warehouse_id: str, transfer_id: str) -> None:
        _positive(quantity)
        if to_warehouse_id == self.warehouse_id:
            raise SameWarehouse("cannot transfer to the same warehouse",
                                warehouse_id=self.warehouse_id)
        self._require_available(quantity)
        self._transferred_out(quantity=quantity, to_warehouse_id=to_warehouse_id,
                              transfer_id=transfer_id)

    def transfer_in(self, quantity: int, from_warehouse_id: str, transfer_id: str) -> None:
        _positive(quantity)
        self._transferred_in(quantity=quantity, from_warehouse_id=from_warehouse_id,
                             transfer_id=transfer_id)

    def reserve(self, quantity: int, reference: str) -> None:
        _positive(quantity)
        self._require_available(quantity)
        self._reserved(quantity=quantity, reference=reference)

    def release(self, quantity: int, reference: str) -> None:
        _positive(quantity)
        self._require_reserved(quantity, reference)
        self._released(quantity=quantity, reference=reference)

    def issue(self, quantity: int, reference: str) -> None:
        """Goods leave the warehouse against a reservation (shipment)."""
        _positive(quantity)
        self._require_reserved(quantity, reference)
        self._issued(quantity=quantity, reference=reference)

    def restock(self, quantity: int, reference: str) -> None:
        """Returned goods come back on hand (after-sales inspection)."""
        _positive(quantity)
        self._restocked(quantity=quantity, reference=reference)

    # -- rules ------------------------------------------------------------------

    def _require_available(self, quantity: int) -> None:
        if quantity > self.available:
            raise InsufficientStock(
                f"{self.sku} in {self.warehouse_id}: {quantity} wanted, "
                f"{self.available} available",
                sku=self.sku, warehouse_id=self.warehouse_id,
                requested=quantity, available=self.available,
            )

    def _require_reserved(self, quantity: int, reference: str) -> None:
        held = self.reservations.get(reference, 0)
        if quantity > held:
            raise InvalidCommand(
                f"{reference} holds {held} of {self.sku} in {self.warehouse_id}, "
                f"not {quantity}",
                reference=reference, reserved=held, requested=quantity,
            )

    # -- events (apply only; never decide) ---------------------------------------

    @event("StockReceived")
    def _received(self, quantity: int, reference: str) -> None:
        self.on_hand += quantity

    @event("StockAdjusted")
    def _adjusted(self, delta: int, reason: str) -> None:
        self.on_hand += delta

    @event("StockTransferredOut")
    def _transferred_out(self, quantity: int, to_warehouse_id: str, transfer_id: str) -> None:
        self.on_hand -= quantity

    @event("StockTransferredIn")
    def _transferred_in(self, quantity: int, from_warehouse_id: str, transfer_id: str) -> None:
        self.on_hand += quantity

    @event("StockReserved")
    def _reserved(self, quantity: int, reference: str) -> None:
        self.reserved += quantity
        self.reservations[reference] = self.reservations.get(reference, 0) + quantity

    @event("StockReleased")
    def _released(self, quantity: int, reference: str) -> None:
        self._unhold(quantity, reference)

    @event("StockIssued")
    def _issued(self, quantity: int, reference: str) -> None:
        self._unhold(quantity, reference)
        self.on_hand -= quantity

    @event("StockRestocked")
    def _restocked(self, quantity: int, reference: str) -> None:
        self.on_hand += quantity

    def _unhold(self, quantity: int, reference: str) -> None:
        self.reserved -= quantity
        left = self.reservations[reference] - quantity
        if left:
            self.reservations[reference] = left
        else:
            del self.reservations[reference]


def _positive(quantity: int) -> None:
    if quantity <= 0:
        raise InvalidCommand("quantity must be positive", field="quantity")
