"""B2B purchase orders: wholesale prices, approval against stock, shipment, receipt."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from domain.allocation import StockCandidate, plan_allocation
from domain.errors import DistributorInactive, InsufficientStock, InvalidCommand, \
    InvalidTransition
from domain.fulfilment import shipment_id_for
from domain.purchasing import NoWholesalePrice, PurchaseOrder
from tests.domain_support import assert_replays, state

AT = datetime(2024, 6, 1, 9, tzinfo=timezone.utc)
WHOLESALE = {"TEA": 1200, "CUP": 600, "GIFT": None}
LINES = [("TEA", 10), ("CUP", 4)]
STOCK = {"TEA": [StockCandidate("W-HZ", "ZJ", 6), StockCandidate("W-SH", "SH", 20)],
         "CUP": [StockCandidate("W-HZ", "ZJ", 4)]}


def requested(lines=LINES) -> PurchaseOrder:
    po = PurchaseOrder.request("PO-1", "D-1", "active", lines, WHOLESALE, "CNY", AT)
    return po


def test_request_at_wholesale_prices() -> None:
    po = requested()
    assert po.id == PurchaseOrder.create_id("PO-1") and po.status == "requested"
    assert [(x["sku"], x["unit_price_minor"], x["amount_minor"]) for x in po.lines] == \
        [("TEA", 1200, 12000), ("CUP", 600, 2400)]
    assert po.total_minor == 14400 and PurchaseOrder.commissionable is False


@pytest.mark.parametrize("status, lines, error", [
    ("pending", LINES, DistributorInactive), ("suspended", LINES, DistributorInactive),
    ("active", [("GIFT", 1)], NoWholesalePrice), ("active", [("PEN", 1)], InvalidCommand),
    ("active", [], InvalidCommand), ("active", [("TEA", 0)], InvalidCommand),
])
def test_refused_requests(status: str, lines, error: type) -> None:
    with pytest.raises(error):
        PurchaseOrder.request("PO-1", "D-1", status, lines, WHOLESALE, "CNY", AT)


def test_approve_ship_receive() -> None:
    po = requested()
    events = po.collect_events()
    shipments = po.approve(plan_allocation(LINES, "ZJ", STOCK), AT)
    assert [(s.warehouse_id, s.lines) for s in shipments] == [
        ("W-HZ", (("CUP", 4), ("TEA", 6))), ("W-SH", (("TEA", 4),))]
    assert po.shipment_plans() == shipments
    assert po.allocated_stock() == [("CUP", "W-HZ", 4), ("TEA", "W-HZ", 6),
                                   ("TEA", "W-SH", 4)]
    with pytest.raises(InvalidTransition):
        po.receive(AT)
    po.record_dispatch(shipment_id_for("PO-1", "W-HZ"), AT)
    assert po.status == "approved"
    with pytest.raises(InvalidCommand):
        po.record_dispatch(shipment_id_for("PO-1", "W-HZ"), AT)
    po.record_dispatch(shipment_id_for("PO-1", "W-SH"), AT)
    assert po.status == "shipped"
    po.receive(AT)
    assert po.status == "received"
    events += po.collect_events()
    assert [type(e).__name__ for e in events] == [
        "PurchaseOrderRequested", "PurchaseOrderApproved", "PurchaseOrderShipmentDispatched",
        "PurchaseOrderShipmentDispatched", "PurchaseOrderReceived"]
    assert_replays(po, events)


def test_approval_needs_all_the_stock_and_rejection_needs_a_reason() -> None:
    po = requested([("TEA", 30)])
    po.collect_events()
    before = state(po)
    with pytest.raises(InsufficientStock) as refused:
        po.approve(plan_allocation([("TEA", 30)], "ZJ", STOCK), AT)
    assert refused.value.details["available"] == 26
    with pytest.raises(InvalidCommand):
        po.reject(" ", AT)
    assert po.collect_events() == [] and state(po) == before
    po.reject("too much at once", AT)
    assert (po.status, po.reason) == ("rejected", "too much at once")
    for command in (lambda: po.approve(plan_allocation([("TEA", 30)], "ZJ", STOCK), AT),
                    lambda: po.reject("again", AT)):
        with pytest.raises(InvalidTransition):
            command()
