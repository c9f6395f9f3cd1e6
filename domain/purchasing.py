"""B2B purchase orders: an approved distributor buys stock at wholesale prices.

    request   (new)                        -> requested
    approve   requested (stock covered)    -> approved     (the caller reserves the stock)
    reject    requested                    -> rejected
    record_dispatch  approved              -> approved | shipped (every shipment dispatched)
    receive   shipped                      -> received     (the distributor confirms)

Purchase orders are never commissionable: they create no PaidLine, and nothing about
them is a commission base.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.allocation import LinePlan, require_covered
from domain.checks import ensure
from domain.errors import DistributorInactive, DomainError, InvalidCommand, InvalidTransition
from domain.fulfilment import ShipmentPlan, plan_shipments
from domain.ids import natural_id
from domain.orders import check_one_line_per_sku
from domain.pricing import check_requested_lines


def reservation_reference(purchase_order_id: str) -> str:
    """The reference a purchase order's stock is reserved under. Orders reserve under
    their bare id; "/" is in no id, so the two can never share a reservation."""
    return f"PO/{purchase_order_id}"


class NoWholesalePrice(DomainError):
    code = "no_wholesale_price"


class PurchaseOrder(Aggregate):
    commissionable = False

    @staticmethod
    def create_id(purchase_order_id: str) -> UUID:
        return natural_id("purchase_order", purchase_order_id)

    @classmethod
    def request(cls, purchase_order_id: str, distributor_id: str, distributor_status: str,
                lines: Sequence[tuple[str, int]], wholesale_prices: Mapping[str, int | None],
                currency: str, at: datetime) -> "PurchaseOrder":
        """`wholesale_prices`: sku -> wholesale price (None when the product has none) for
        every known product on the lines. DistributorInactive unless the distributor is
        active; DuplicateLine for a SKU on two lines; InvalidCommand for an unknown SKU;
        NoWholesalePrice for a product without a wholesale price."""
        if distributor_status != "active":
            raise DistributorInactive(f"distributor {distributor_id} is {distributor_status}, "
                                      "not active", distributor_id=distributor_id)
        check_one_line_per_sku([sku for sku, _ in lines])  # 409 duplicate_line, as orders
        check_requested_lines(lines)
        priced = []
        for line_no, (sku, quantity) in enumerate(lines, start=1):
            if sku not in wholesale_prices:
                raise InvalidCommand(f"there is no product {sku}", field="lines")
            price = wholesale_prices[sku]
            if price is None:
                raise NoWholesalePrice(f"{sku} has no wholesale price", sku=sku)
            priced.append({"line_no": line_no, "sku": sku, "quantity": quantity,
                           "unit_price_minor": price, "amount_minor": price * quantity})
        return cls(purchase_order_id=purchase_order_id, distributor_id=distributor_id,
                   lines=priced, total_minor=sum(x["amount_minor"] for x in priced),
                   currency=currency, at=at)

    @event("PurchaseOrderRequested")
    def __init__(self, purchase_order_id: str, distributor_id: str,
                 lines: list[dict[str, Any]], total_minor: int, currency: str,
                 at: datetime) -> None:
        self.purchase_order_id = purchase_order_id
        self.distributor_id = distributor_id
        self.lines = [dict(line, allocations=[]) for line in lines]
        self.total_minor = total_minor
        self.currency = currency
        self.requested_at = at
        self.status = "requested"
        self.shipments: dict[str, str] = {}  # shipment id -> created | dispatched
        self.reason: str | None = None

    def _require(self, status: str, doing: str) -> None:
        if self.status != status:
            raise InvalidTransition(f"purchase order {self.purchase_order_id} is "
                                    f"{self.status}; it cannot be {doing}",
                                    status=self.status)

    def allocated_stock(self) -> list[tuple[str, str, int]]:
        """(sku, warehouse_id, quantity) held for it, under reservation_reference(its id)."""
        return sorted((line["sku"], a["warehouse_id"], a["quantity"])
                      for line in self.lines for a in line["allocations"])

    def shipment_plans(self) -> list[ShipmentPlan]:
        """One shipment per warehouse of the approved allocations."""
        return plan_shipments(self.purchase_order_id, self.allocated_stock())

    def approve(self, plans: Sequence[LinePlan], at: datetime) -> list[ShipmentPlan]:
        """Approve with an allocation plan per line (same order, SKUs and quantities);
        InsufficientStock unless every line is covered. Returns the shipments to create."""
        self._require("requested", "approved")
        ensure([(p.sku, p.requested) for p in plans] ==
               [(x["sku"], x["quantity"]) for x in self.lines], "plans do not match lines")
        require_covered(plans)
        allocations = [[{"warehouse_id": w, "quantity": q} for w, q in p.allocations]
                       for p in plans]
        held = [(p.sku, w, q) for p in plans for w, q in p.allocations]
        shipments = plan_shipments(self.purchase_order_id, held)
        self._approved(allocations=allocations,
                       shipment_ids=[s.shipment_id for s in shipments], at=at)
        return shipments

    @event("PurchaseOrderApproved")
    def _approved(self, allocations: list[list[dict[str, Any]]], shipment_ids: list[str],
                  at: datetime) -> None:
        for line, allocated in zip(self.lines, allocations):
            line["allocations"] = [dict(a) for a in allocated]
        self.shipments = {sid: "created" for sid in shipment_ids}
        self.status = "approved"

    def reject(self, reason: str, at: datetime) -> None:
        self._require("requested", "rejected")
        if not reason.strip():
            raise InvalidCommand("a reason is required", field="reason")
        self._rejected(reason=reason, at=at)

    @event("PurchaseOrderRejected")
    def _rejected(self, reason: str, at: datetime) -> None:
        self.status = "rejected"
        self.reason = reason

    def record_dispatch(self, shipment_id: str, at: datetime) -> None:
        """One of its shipments left the warehouse; shipped once all have."""
        self._require("approved", "dispatched")
        if self.shipments.get(shipment_id) != "created":
            raise InvalidCommand(f"purchase order {self.purchase_order_id} has no shipment "
                                 f"{shipment_id} waiting for dispatch", field="shipment_id")
        done = all(s != "created" for sid, s in self.shipments.items() if sid != shipment_id)
        self._shipment_dispatched(shipment_id=shipment_id,
                                  status="shipped" if done else "approved", at=at)

    @event("PurchaseOrderShipmentDispatched")
    def _shipment_dispatched(self, shipment_id: str, status: str, at: datetime) -> None:
        self.shipments[shipment_id] = "dispatched"
        self.status = status

    def receive(self, at: datetime) -> None:
        """The distributor confirms the goods arrived."""
        self._require("shipped", "received")
        self._received(at=at)

    @event("PurchaseOrderReceived")
    def _received(self, at: datetime) -> None:
        self.status = "received"
