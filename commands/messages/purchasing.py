"""Purchasing: distributors' B2B purchase orders."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class RequestPurchaseOrder(Command):
    status = 201
    distributor_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)
    purchase_order_id: str | None = None  # None: a new id

    def handle(self, app: Any) -> dict[str, Any]:
        return app.request_purchase_order(self.distributor_id, list(self.lines),
                                          self.purchase_order_id)


@dataclass(frozen=True)
class ApprovePurchaseOrder(Command):
    purchase_order_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.approve_purchase_order(self.purchase_order_id)


@dataclass(frozen=True)
class ReceivePurchaseOrder(Command):
    purchase_order_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.receive_purchase_order(self.purchase_order_id)
