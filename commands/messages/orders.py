"""Orders and payments."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command, FrozenMap


@dataclass(frozen=True)
class PlaceOrder(Command):
    status = 201
    customer_id: str
    customer_name: str  # not `name`: that is the command's own name
    phone: str
    shipping_address: FrozenMap  # region, city, line1, postcode
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)
    order_id: str | None = None  # None: a new id
    distributor_id: str | None = None
    referral_code: str | None = None
    coupon_code: str | None = None
    allow_backorder: bool = False

    def handle(self, app: Any) -> dict[str, Any]:
        return app.place_order(
            self.customer_id, self.customer_name, self.phone, dict(self.shipping_address),
            list(self.lines), order_id=self.order_id, distributor_id=self.distributor_id,
            referral_code=self.referral_code, coupon_code=self.coupon_code,
            allow_backorder=self.allow_backorder)


@dataclass(frozen=True)
class PayOrder(Command):
    order_id: str
    amount_minor: int
    payment_reference: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.pay_order(self.order_id, self.amount_minor, self.payment_reference)


@dataclass(frozen=True)
class CancelOrder(Command):
    order_id: str
    reason: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.cancel_order(self.order_id, self.reason)
