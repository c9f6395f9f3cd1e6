"""The shipments read model: built live in batches, it equals a rebuild from the log."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from commands import Fenxiao
from domain.carriers import RateCard
from domain.errors import NotFound
from projections.runner import ProjectionRunner
from projections.shipments import (ShipmentsProjection, get_shipment, list_carriers,
                                   shipments_of_order)
from tests.test_fulfilment_api import LATER, NOW

SF = RateCard("SF", "SF Express", 1200, 100, default_days=3, promised_days={"east": 1})
ZTO = RateCard("ZTO", "ZTO Express", 600, 50, default_days=4, promised_days={"east": 2})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def paid_order(app: Fenxiao, order_id: str, lines: list[tuple[str, int]]) -> list[str]:
    """Placed and paid through the order commands; its shipment ids by warehouse."""
    placed = app.execute(lambda: app.place_order(
        f"C-{order_id}", "Li Lei", "13800138000",
        {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"}, lines,
        order_id=order_id)).body
    paid = app.execute(lambda: app.pay_order(order_id, placed["total"],
                                             f"PAY-{order_id}")).body
    return [s["shipment_id"] for s in sorted(paid["shipments"],
                                             key=lambda s: s["warehouse_id"])]


def activity(app: Fenxiao) -> None:
    """Shipments in every state, late and repeated carrier events, a changed rate card."""
    app.clock = lambda: NOW
    run = app.execute
    for w, region in (("W1", "east"), ("W2", "south")):
        run(lambda: app.open_warehouse(w, w, region))
    run(lambda: app.add_product("TEA", "Tea", "", 1000))
    run(lambda: app.add_product("CUP", "Cup", "", 500, wholesale_price_minor=300))
    run(lambda: app.receive_stock("TEA", "W1", 20, "R-1"))
    run(lambda: app.receive_stock("CUP", "W2", 20, "R-2"))
    run(lambda: app.apply_distributor("One", "13800000001", None, "D1"))
    run(lambda: app.approve_distributor("D1"))
    run(lambda: app.add_carrier(SF))
    run(lambda: app.add_carrier(ZTO))
    first, second = paid_order(app, "O-1", [("TEA", 2), ("CUP", 1)])
    (waiting,) = paid_order(app, "O-2", [("TEA", 1)])
    run(lambda: app.request_purchase_order("D1", [("CUP", 4)], "PO-1"))
    run(lambda: app.approve_purchase_order("PO-1"))
    (bought,) = app.purchase_order("PO-1").shipments
    for shipment_id in (first, second, waiting, bought):
        run(lambda: app.pick_shipment(shipment_id))
    for shipment_id in (first, second, bought):
        run(lambda: app.pack_shipment(shipment_id))
    run(lambda: app.change_rate_card(RateCard("SF", "SF Express", 900, 100, 2, {"east": 1})))
    run(lambda: app.dispatch_shipment(first))
    run(lambda: app.dispatch_shipment(second, "SF", "SF-2"))
    number = app.shipment(first).tracking_number
    app.clock = lambda: LATER
    for event_id, status, when in (("E-1", "in_transit", "2026-11-25T08:00:00+08:00"),
                                   ("E-1", "in_transit", "2026-11-25T08:00:00+08:00"),
                                   ("E-2", "exception", "2026-11-25T12:00:00+08:00"),
                                   ("E-3", "delivered", "2026-11-26T09:00:00+08:00"),
                                   ("E-4", "out_for_delivery", "2026-11-26T07:00:00Z")):
        run(lambda: app.record_carrier_event("ZTO", event_id, number, status, at(when),
                                             "hub"))


def snapshot(app: Fenxiao) -> dict[str, list]:
    with app.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
                for t in ShipmentsProjection.tables}


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_rebuild_equals_live(app: Fenxiao, batch_size: int) -> None:
    runner = ProjectionRunner(app, [ShipmentsProjection()], batch_size=batch_size)
    runner.catch_up()
    activity(app)
    runner.catch_up()
    live = snapshot(app)
    assert len(live["rm_shipments"]) == 4
    runner.rebuild(ShipmentsProjection.name)
    assert snapshot(app) == live


def test_the_views(app: Fenxiao) -> None:
    activity(app)
    ProjectionRunner(app, [ShipmentsProjection()], batch_size=3).catch_up()
    with app.engine.connect() as conn:
        first, second = shipments_of_order(conn, "O-1")
        (waiting,) = shipments_of_order(conn, "O-2")
        carriers = list_carriers(conn)
    assert (first["status"], first["carrier"], second["status"], second["carrier"]) == \
        ("delivered", "ZTO", "dispatched", "SF")
    assert first["carrier_choice"]["chosen_by"] == "cheapest_on_time"
    assert [(e["status"], e["applied"]) for e in first["events"] if e["kind"] == "carrier"] \
        == [("in_transit", True), ("exception", True), ("delivered", True),
            ("out_for_delivery", False)]
    assert first["delivered_at"] == "2026-11-26T01:00:00+00:00"
    assert (waiting["status"], waiting["carrier_choice"]) == ("picked", None)
    assert [c["carrier"] for c in carriers] == ["SF", "ZTO"]
    assert (carriers[0]["base_fee_minor"], carriers[0]["default_days"]) == (900, 2)
    (po_shipment,) = app.purchase_order("PO-1").shipments
    with app.engine.connect() as conn:
        po = get_shipment(conn, po_shipment)
        assert get_shipment(conn, "NOPE") is None
    assert (po["source"], po["purchase_order_id"], po["order_id"], po["status"]) == \
        ("purchase_order", "PO-1", None, "packed")


def test_a_rate_card_can_be_changed_but_not_invented(app: Fenxiao) -> None:
    app.execute(lambda: app.add_carrier(SF))
    changed = app.execute(lambda: app.change_rate_card(
        RateCard("SF", "SF Express", 500, 0, 1))).body
    assert changed["base_fee"] == {"amount": 500, "currency": "CNY"}
    assert app.rate_cards()[0].base_fee_minor == 500
    with pytest.raises(NotFound):
        app.execute(lambda: app.change_rate_card(ZTO))


def test_a_dispatch_after_a_cancellation_is_a_conflict(app: Fenxiao) -> None:
    """The order is cancelled while its shipment is packed: dispatch answers 409
    invalid_transition (a state conflict), not a validation error about the released
    reservation, and records nothing."""
    from domain.errors import DomainError

    app.clock = lambda: NOW
    app.execute(lambda: app.open_warehouse("W1", "W1", "east"))
    app.execute(lambda: app.add_product("TEA", "Tea", "", 1999))
    app.execute(lambda: app.receive_stock("TEA", "W1", 5, "R-1"))
    app.execute(lambda: app.add_carrier(SF))
    (shipment_id,) = paid_order(app, "O-RACE", [("TEA", 1)])
    app.execute(lambda: app.pick_shipment(shipment_id))
    app.execute(lambda: app.pack_shipment(shipment_id))
    app.execute(lambda: app.cancel_order("O-RACE", "changed mind"))
    before = app.last_position()
    with pytest.raises(DomainError) as refused:
        app.execute(lambda: app.dispatch_shipment(shipment_id))
    assert (refused.value.code, refused.value.status) == ("invalid_transition", 409)
    assert app.last_position() == before
