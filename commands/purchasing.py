"""B2B purchasing: an approved distributor buys stock at wholesale prices.

request -> approve (stock reserved and shipments created, one save) -> dispatch (by the
fulfilment service, which tells the purchase order) -> receive (the distributor). Purchase
orders are never commissionable: nothing here touches the commission ledger.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from commands.catalog import StockService
from commands.ledger import LedgerService
from domain.allocation import StockCandidate, plan_allocation
from domain.errors import Duplicate
from domain.fulfilment import Shipment
from domain.purchasing import PurchaseOrder, reservation_reference
from domain.stock import StockItem

# A purchase order has no customer region: warehouses are taken by most available.
NO_REGION = ""
SHIPMENT_SOURCE = "purchase_order"


def purchase_order_view(po: PurchaseOrder, updated_at: datetime) -> dict[str, Any]:
    warehouses = {plan.shipment_id: plan.warehouse_id for plan in po.shipment_plans()}
    return {
        "purchase_order_id": po.purchase_order_id, "distributor_id": po.distributor_id,
        "status": po.status, "currency": po.currency, "total": po.total_minor,
        "lines": [{"line_no": x["line_no"], "sku": x["sku"], "quantity": x["quantity"],
                   "unit_price": x["unit_price_minor"], "amount": x["amount_minor"],
                   "allocations": [dict(a) for a in x["allocations"]]} for x in po.lines],
        "shipments": [{"shipment_id": sid, "warehouse_id": warehouses.get(sid),
                       "status": status} for sid, status in sorted(po.shipments.items())],
        "requested_at": po.requested_at.isoformat(), "updated_at": updated_at.isoformat(),
    }


class PurchasingService(StockService, LedgerService):
    """Purchase orders."""

    def purchase_order(self, purchase_order_id: str) -> PurchaseOrder:
        return self.load(PurchaseOrder.create_id(purchase_order_id),
                         f"purchase order {purchase_order_id}",
                         purchase_order_id=purchase_order_id)

    def request_purchase_order(self, distributor_id: str, lines: Sequence[tuple[str, int]],
                               purchase_order_id: str | None = None) -> dict[str, Any]:
        """A purchase order at today's wholesale prices: NotFound for an unknown
        distributor or product, DistributorInactive unless the distributor is active,
        NoWholesalePrice for a product without one."""
        purchase_order_id = purchase_order_id or self._new_id("PO")
        if self.exists(PurchaseOrder.create_id(purchase_order_id)):
            raise Duplicate(f"purchase order {purchase_order_id} already exists",
                            purchase_order_id=purchase_order_id)
        distributor = self.distributor(distributor_id)
        prices = {sku: self.product(sku).wholesale_price_minor for sku, _ in lines}
        now = self.clock()
        po = PurchaseOrder.request(purchase_order_id, distributor_id, distributor.status,
                                   lines, prices, self.settings.currency, now)
        return {**purchase_order_view(po, now), "position": self.record(po)}

    def approve_purchase_order(self, purchase_order_id: str) -> dict[str, Any]:
        """Allocate every line over the warehouses stocking its SKU (most available
        first, split when needed), reserve that stock and create the shipments, in one
        save. InsufficientStock (nothing reserved) unless every line is covered."""
        po = self.purchase_order(purchase_order_id)
        lines = [(x["sku"], x["quantity"]) for x in po.lines]
        items: dict[tuple[str, str], StockItem] = {}
        candidates = {sku: self._stock_candidates(sku, items) for sku, _ in lines}
        now = self.clock()
        plans = po.approve(plan_allocation(lines, NO_REGION, candidates), now)
        reserved = {}
        for sku, warehouse_id, quantity in po.allocated_stock():
            item = items[(sku, warehouse_id)]
            item.reserve(quantity, reservation_reference(purchase_order_id))
            reserved[item.id] = item
        shipments = [Shipment.create(plan, SHIPMENT_SOURCE, purchase_order_id, None, now)
                     for plan in plans]
        return {**purchase_order_view(po, now),
                "position": self.record(po, *reserved.values(), *shipments)}

    def receive_purchase_order(self, purchase_order_id: str) -> dict[str, Any]:
        """The distributor confirms the goods arrived (after every shipment left)."""
        po = self.purchase_order(purchase_order_id)
        now = self.clock()
        po.receive(now)
        return {**purchase_order_view(po, now), "position": self.record(po)}

    # -- where the stock is ----------------------------------------------------------

    def _stock_candidates(self, sku: str, items: dict[tuple[str, str], StockItem]
                          ) -> list[StockCandidate]:
        """Every warehouse stocking `sku`, with what it has available, from the write
        side (the product's index of its stock locations; a projection may lag). The
        stock items loaded are kept in `items` for reserving."""
        candidates = []
        for warehouse_id, region in sorted(self.product(sku).stocked_at.items()):
            item = self.find(StockItem.create_id(sku, warehouse_id))
            if item is not None:
                items[(sku, warehouse_id)] = item
                candidates.append(StockCandidate(warehouse_id, region, item.available))
        return candidates
