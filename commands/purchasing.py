"""B2B purchasing: an approved distributor buys stock at wholesale prices.

request -> approve (stock reserved and shipments created, one save) -> dispatch (by the
fulfilment service, which tells the purchase order) -> receive (the distributor). Purchase
orders are never commissionable: nothing here touches the commission ledger.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from commands.orders import OrderService, _candidates, _distinct
from domain.allocation import plan_allocation
from domain.errors import Duplicate
from domain.fulfilment import Shipment
from domain.purchasing import PurchaseOrder, reservation_reference

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


class PurchasingService(OrderService):
    """Purchase orders (an order service: an approval serves the backorder queues first)."""

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
        save. Consumer orders already waiting for a SKU are served first (first come,
        first served), in the same save. InsufficientStock (nothing saved) unless every
        line is covered by what they leave."""
        po = self.purchase_order(purchase_order_id)
        lines = [(x["sku"], x["quantity"]) for x in po.lines]
        now = self.clock()
        products = {sku: self.product(sku) for sku, _ in lines}
        items = self._stock_items(products.values())
        queues, served = self._serve_queues(products.values(), items, now)
        plans = po.approve(plan_allocation(lines, NO_REGION, _candidates(products, items)),
                           now)
        reserved = []
        for sku, warehouse_id, quantity in po.allocated_stock():
            item = items[(sku, warehouse_id)]
            item.reserve(quantity, reservation_reference(purchase_order_id))
            reserved.append(item)
        shipments = [Shipment.create(plan, SHIPMENT_SOURCE, purchase_order_id, None, now)
                     for plan in plans]
        return {**purchase_order_view(po, now),
                "position": self.record(*_distinct([po, *served, *queues.values(),
                                                    *reserved, *shipments]))}

    def receive_purchase_order(self, purchase_order_id: str) -> dict[str, Any]:
        """The distributor confirms the goods arrived (after every shipment left)."""
        po = self.purchase_order(purchase_order_id)
        now = self.clock()
        po.receive(now)
        return {**purchase_order_view(po, now), "position": self.record(po)}
