"""After-sales cases: returns, exchanges, repairs, compensation, refunds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class RequestCase(Command):
    status = 201
    order_id: str
    type: str  # refund_only, return_refund, exchange, repair or compensation
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)
    reason: str
    amount_minor: int | None = None  # a compensation's, and only a compensation's
    case_id: str | None = None  # None: a new id

    def handle(self, app: Any) -> dict[str, Any]:
        return app.request_case(self.order_id, self.type, list(self.lines), self.reason,
                                self.amount_minor, self.case_id)


@dataclass(frozen=True)
class ApproveCase(Command):
    case_id: str
    reason: str | None = None

    def handle(self, app: Any) -> dict[str, Any]:
        return app.approve_case(self.case_id, self.reason)


@dataclass(frozen=True)
class RejectCase(Command):
    case_id: str
    reason: str | None = None

    def handle(self, app: Any) -> dict[str, Any]:
        return app.reject_case(self.case_id, self.reason)


@dataclass(frozen=True)
class ReceiveCase(Command):
    case_id: str
    warehouse_id: str
    restock: bool  # False: the goods are scrapped

    def handle(self, app: Any) -> dict[str, Any]:
        return app.receive_case(self.case_id, self.warehouse_id, self.restock)


@dataclass(frozen=True)
class RefundCase(Command):
    case_id: str
    amount_minor: int
    refund_reference: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.refund_case(self.case_id, self.amount_minor, self.refund_reference)


@dataclass(frozen=True)
class ShipCase(Command):
    case_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.ship_case(self.case_id)


@dataclass(frozen=True)
class CloseCase(Command):
    case_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.close_case(self.case_id)
