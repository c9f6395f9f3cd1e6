"""Reports' one command: a SKU's replenishment policy (lead time and safety stock). The
reports themselves are queries of read models (projections/reports.py)."""
from __future__ import annotations

from typing import Any

from commands.app import CoreApp
from domain.catalog import Product
from domain.replenishment import ReplenishmentPolicy


def policy_view(policy: ReplenishmentPolicy) -> dict[str, Any]:
    return {"sku": policy.sku, "lead_time_days": policy.lead_time_days,
            "safety_stock": policy.safety_stock}


class ReportService(CoreApp):
    def set_replenishment_policy(self, sku: str, lead_time_days: int,
                                 safety_stock: int) -> dict[str, Any]:
        """The SKU's lead time (days) and safety stock (units) from now on, for every
        warehouse; the same terms again record nothing (position None)."""
        self.load(Product.create_id(sku), f"product {sku}", sku=sku)  # 404 if unknown
        at = self.clock()
        policy = self.find(ReplenishmentPolicy.create_id(sku))
        if policy is None:
            policy = ReplenishmentPolicy.set_up(sku, lead_time_days, safety_stock, at)
        else:
            policy.change(lead_time_days, safety_stock, at)
        return {**policy_view(policy), "position": self.record(policy)}
