"""Reports' one command: the replenishment policy of a SKU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.messages.base import Command


@dataclass(frozen=True)
class SetReplenishmentPolicy(Command):
    sku: str
    lead_time_days: int
    safety_stock: int  # units

    def handle(self, app: Any) -> dict[str, Any]:
        return app.set_replenishment_policy(self.sku, self.lead_time_days, self.safety_stock)
