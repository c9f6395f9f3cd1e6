"""Fulfilment through the HTTP API: rate cards, pick, pack, dispatch (stock issued, carrier
chosen by rate card, the source told), carrier events and tracking, on both databases."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from commands import Fenxiao
from domain.orders import Order
from domain.purchasing import PurchaseOrder
from tests.api_support import Api
from tests.test_api_distributors import network

CARDS = [  # east is the customers' region of most tests
    {"carrier": "SF", "name": "SF Express", "base_fee": {"amount": 1200, "currency": "CNY"},
     "per_item_fee": {"amount": 100, "currency": "CNY"},
     "promised_days": {"east": 1, "xinjiang": 5}, "default_days": 3},
    {"carrier": "ZTO", "name": "ZTO Express", "base_fee": {"amount": 600, "currency": "CNY"},
     "per_item_fee": {"amount": 50, "currency": "CNY"},
     "promised_days": {"east": 2, "xinjiang": 6}, "default_days": 4},
    {"carrier": "EMS", "name": "China Post EMS",
     "base_fee": {"amount": 800, "currency": "CNY"},
     "per_item_fee": {"amount": 0, "currency": "CNY"}, "default_days": 5},
]
# The application's clock in these tests: dispatches happen at NOW, the carrier's events
# (dated 2026-11-25 to 27, within a day of the dispatch and of their receipt) arrive later.
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=3)


def set_clock(api: Api, at: datetime) -> None:
    the_app(api).clock = lambda: at


def the_app(api: Api) -> Fenxiao:
    return api.client.application.extensions["fenxiao"]


def error_code(response: Any) -> str:
    return response.get_json()["error"]["code"]


def add_carriers(api: Api) -> int:
    for card in CARDS:
        reply = api.post("/carriers", card)
        assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["position"]


def seed(api: Api) -> None:
    """W1 (east) holds 10 TEA, W2 (south) 5 CUP; and the rate cards."""
    set_clock(api, NOW)
    api.seed()
    add_carriers(api)


def paid_order(api: Api, order_id: str, lines: Sequence[tuple[str, int]],
               region: str = "east", distributor_id: str | None = None) -> list[str]:
    """An order placed and paid through the API (its stock reserved, its shipments
    created, one per warehouse); returns the shipment ids by warehouse."""
    placed = api.post("/orders", {
        "order_id": order_id, "distributor_id": distributor_id,
        "customer": {"customer_id": f"C-{order_id}", "name": "Li Lei",
                     "phone": "13800138000"},
        "shipping_address": {"region": region, "city": "Hangzhou", "line1": "1 Beishan Rd"},
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines]},
        role="integration")
    assert placed.status_code == 201, placed.get_json()
    paid = api.post(f"/orders/{order_id}/payments", {
        "amount": {"amount": placed.get_json()["total"], "currency": "CNY"},
        "payment_reference": f"PAY-{order_id}"}, role="integration")
    assert paid.status_code == 200, paid.get_json()
    assert paid.get_json()["status"] == "fulfilling"
    return [s["shipment_id"] for s in sorted(paid.get_json()["shipments"],
                                             key=lambda s: s["warehouse_id"])]


def approved_purchase_order(api: Api, purchase_order_id: str, sku: str,
                            quantity: int) -> list[str]:
    """A purchase order of distributor D1 (active), approved: its stock reserved and its
    shipments created; returns the shipment ids."""
    requested = api.post("/purchase-orders", {
        "purchase_order_id": purchase_order_id, "distributor_id": "D1",
        "lines": [{"sku": sku, "quantity": quantity}]})
    assert requested.status_code == 201, requested.get_json()
    approved = api.post(f"/purchase-orders/{purchase_order_id}/approve", role="operator")
    assert approved.status_code == 200, approved.get_json()
    return [s["shipment_id"] for s in approved.get_json()["shipments"]]


def packed(api: Api, shipment_id: str) -> None:
    for step in ("pick", "pack"):
        reply = api.post(f"/shipments/{shipment_id}/{step}", role="warehouse")
        assert reply.status_code == 200, reply.get_json()


def dispatched(api: Api, shipment_id: str, **body: str) -> dict[str, Any]:
    packed(api, shipment_id)
    reply = api.post(f"/shipments/{shipment_id}/dispatch", body, role="warehouse")
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def carrier_event(api: Api, carrier: str, event_id: str, tracking_number: str, status: str,
                  occurred_at: str, **extra: Any) -> Any:
    set_clock(api, LATER)
    return api.post(f"/carriers/{carrier}/events",
                    {"event_id": event_id, "tracking_number": tracking_number,
                     "status": status, "occurred_at": occurred_at, **extra},
                    role="integration")


def stock(api: Api, sku: str, warehouse_id: str, position: int) -> tuple[int, int]:
    items = api.get("/inventory", sku=sku, warehouse_id=warehouse_id,
                    min_position=position).get_json()["items"]
    return items[0]["on_hand"], items[0]["reserved"]


def order_status(app: Fenxiao, order_id: str) -> str:
    return app.find(Order.create_id(order_id)).status


# -- rate cards ---------------------------------------------------------------------------

def test_a_rate_card_is_created_once(api: Api) -> None:
    made = api.post("/carriers", CARDS[0])
    assert made.status_code == 201
    assert made.get_json() == {**CARDS[0], "position": made.get_json()["position"]}
    again = api.post("/carriers", {**CARDS[0], "name": "SF renamed"})
    assert again.status_code == 409 and error_code(again) == "duplicate"
    no_regions = api.post("/carriers", CARDS[2])
    assert no_regions.get_json()["promised_days"] == {}


def test_bad_rate_cards_are_422_and_record_nothing(api: Api) -> None:
    app = the_app(api)
    card = CARDS[0]
    for bad in ({**card, "base_fee": {"amount": -1, "currency": "CNY"}},
                {**card, "per_item_fee": {"amount": 1, "currency": "USD"}},
                {**card, "promised_days": {" ": 1}},
                {**card, "promised_days": {"east": 366}},
                {**card, "promised_days": {"east": "1"}},
                {**card, "default_days": -1},
                {**card, "carrier": "S F"},
                {**card, "unexpected": 1},
                {k: v for k, v in card.items() if k != "name"}):
        reply = api.post("/carriers", bad)
        assert reply.status_code == 422, (bad, reply.get_json())
        assert error_code(reply) == "validation_error"
    assert app.last_position() == 0


# -- the warehouse's steps and dispatch ------------------------------------------------------

def test_pick_pack_dispatch_issues_the_stock_and_records_the_choice(api: Api) -> None:
    seed(api)
    app = the_app(api)
    east, south = paid_order(api, "O-1", [("TEA", 2), ("CUP", 1)])
    assert stock(api, "TEA", "W1", app.last_position()) == (10, 2)
    picked = api.post(f"/shipments/{east}/pick", role="warehouse").get_json()
    assert (picked["status"], picked["carrier_choice"], picked["order_id"]) == \
        ("picked", None, "O-1")
    api.post(f"/shipments/{east}/pack", role="admin")
    reply = api.post(f"/shipments/{east}/dispatch", {}, role="warehouse").get_json()
    # 2 items to the east within 3 days: ZTO 600 + 2×50 in 2 days beats SF (1400, 1 day);
    # EMS is cheap but takes 5 days
    assert reply["status"] == "dispatched" and reply["carrier"] == "ZTO"
    assert reply["tracking_number"]
    assert reply["carrier_choice"] == {
        "carrier": "ZTO", "fee": 700, "days": 2, "meets_promise": True,
        "chosen_by": "cheapest_on_time", "alternatives": [
            {"carrier": "EMS", "fee": 800, "days": 5, "meets_promise": False},
            {"carrier": "SF", "fee": 1400, "days": 1, "meets_promise": True}]}
    assert reply["lines"] == [{"sku": "TEA", "quantity": 2}] and reply["currency"] == "CNY"
    assert stock(api, "TEA", "W1", reply["position"]) == (8, 0)  # both drop
    assert order_status(app, "O-1") == "fulfilling"  # one shipment still in the warehouse

    other = dispatched(api, south, carrier="SF", tracking_number="SF-0001")
    assert (other["carrier"], other["tracking_number"]) == ("SF", "SF-0001")
    assert other["carrier_choice"]["chosen_by"] == "requested"
    assert other["carrier_choice"]["alternatives"] == []
    assert stock(api, "CUP", "W2", other["position"]) == (4, 0)
    assert order_status(app, "O-1") == "shipped"

    view = api.get(f"/shipments/{east}", role="operator", min_position=other["position"])
    assert view.status_code == 200
    body = view.get_json()
    assert (body["status"], body["carrier"], body["warehouse_id"]) == \
        ("dispatched", "ZTO", "W1")
    assert body["carrier_choice"] == reply["carrier_choice"]
    assert [(e["kind"], e["status"]) for e in body["events"]] == [
        ("warehouse", "created"), ("warehouse", "picked"), ("warehouse", "packed"),
        ("warehouse", "dispatched")]
    assert body["dispatched_at"] and body["delivered_at"] is None


def test_the_fastest_carrier_when_nobody_keeps_the_promise(api: Api) -> None:
    seed(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)], region="xinjiang")
    choice = dispatched(api, shipment_id)["carrier_choice"]
    # SF and EMS both take 5 days to Xinjiang (3 promised): EMS is the cheaper of them
    assert (choice["carrier"], choice["days"], choice["chosen_by"]) == ("EMS", 5, "fastest")
    assert [q["carrier"] for q in choice["alternatives"]] == ["ZTO", "SF"]


def test_steps_out_of_order_are_409_and_record_nothing(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    before = app.last_position()
    for step in ("pack", "dispatch"):
        refused = api.post(f"/shipments/{shipment_id}/{step}", {}, role="warehouse")
        assert refused.status_code == 409, refused.get_json()
        assert error_code(refused) == "invalid_transition"
        assert refused.get_json()["error"]["details"] == {"status": "created"}
    assert app.last_position() == before
    dispatched(api, shipment_id)
    after = app.last_position()
    for step in ("pick", "pack", "dispatch"):
        again = api.post(f"/shipments/{shipment_id}/{step}", {}, role="admin")
        assert (again.status_code, error_code(again)) == (409, "invalid_transition")
    assert app.last_position() == after
    assert api.post("/shipments/NOPE/pick", role="warehouse").status_code == 404


def test_dispatch_refusals(api: Api) -> None:
    api.seed()
    app = the_app(api)
    first, second = paid_order(api, "O-1", [("TEA", 1), ("CUP", 1)])
    packed(api, first)
    before = app.last_position()
    nobody = api.post(f"/shipments/{first}/dispatch", {}, role="warehouse")
    assert (nobody.status_code, error_code(nobody)) == (409, "no_carrier")
    add_carriers(api)
    unknown = api.post(f"/shipments/{first}/dispatch", {"carrier": "YTO"})
    assert (unknown.status_code, error_code(unknown)) == (409, "no_carrier")
    bad = api.post(f"/shipments/{first}/dispatch", {"tracking_number": "has space"})
    assert bad.status_code == 422 and "tracking_number" in bad.get_json()["error"]["details"]
    assert app.last_position() == before + len(CARDS) + 1  # the cards, the opening
    assert api.post(f"/shipments/{first}/dispatch",
                    {"carrier": "SF", "tracking_number": "T-1"}).status_code == 200
    packed(api, second)
    before = app.last_position()
    twice = api.post(f"/shipments/{second}/dispatch",
                     {"carrier": "SF", "tracking_number": "T-1"})
    assert (twice.status_code, error_code(twice)) == (409, "duplicate")
    assert app.last_position() == before
    # the same number with another carrier is another parcel
    assert api.post(f"/shipments/{second}/dispatch",
                    {"carrier": "ZTO", "tracking_number": "T-1"}).status_code == 200


def test_dispatch_honours_the_idempotency_key(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    packed(api, shipment_id)
    first = api.post(f"/shipments/{shipment_id}/dispatch", {}, **{"Idempotency-Key": "k1"})
    after = app.last_position()
    again = api.post(f"/shipments/{shipment_id}/dispatch", {}, **{"Idempotency-Key": "k1"})
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert app.last_position() == after


def test_a_purchase_order_shipment_tells_the_purchase_order(api: Api) -> None:
    seed(api)
    network(api)
    app = the_app(api)
    api.post("/products", {"sku": "BOX", "name": "Gift box",
                           "price": {"amount": 5000, "currency": "CNY"},
                           "wholesale_price": {"amount": 3000, "currency": "CNY"}})
    api.post("/stock/receipts", {"sku": "BOX", "warehouse_id": "W2", "quantity": 10,
                                 "reference": "PO-7"})
    (shipment_id,) = approved_purchase_order(api, "PO-1", "BOX", 3)
    reply = dispatched(api, shipment_id)
    assert (reply["source"], reply["purchase_order_id"], reply["order_id"]) == \
        ("purchase_order", "PO-1", None)
    # no customer region: each carrier's default days; SF keeps the 3 days promised
    assert (reply["region"], reply["carrier"]) == (None, "SF")
    assert stock(api, "BOX", "W2", reply["position"]) == (7, 0)
    assert app.find(PurchaseOrder.create_id("PO-1")).status == "shipped"
    delivered = carrier_event(api, reply["carrier"], "E-1", reply["tracking_number"],
                              "delivered", "2026-11-25T10:00:00+08:00")
    assert delivered.get_json()["result"] == "applied"  # the distributor confirms receipt
    assert app.find(PurchaseOrder.create_id("PO-1")).status == "shipped"


# -- carrier events and tracking ------------------------------------------------------------

def test_carrier_events_are_idempotent_and_only_move_forward(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    sent = dispatched(api, shipment_id)
    carrier, number = sent["carrier"], sent["tracking_number"]
    moving = carrier_event(api, carrier, "E-1", number, "in_transit",
                           "2026-11-25T08:00:00+08:00", location="Hangzhou hub")
    assert moving.status_code == 200
    assert moving.get_json() == {
        "carrier": carrier, "tracking_number": number, "shipment_id": shipment_id,
        "event_id": "E-1", "status": "in_transit", "occurred_at": "2026-11-25T08:00:00+08:00",
        "location": "Hangzhou hub", "result": "applied",
        "position": moving.get_json()["position"]}
    after = app.last_position()
    repeat = carrier_event(api, carrier, "E-1", number, "in_transit",
                           "2026-11-25T08:00:00+08:00", location="Hangzhou hub")
    assert (repeat.status_code, repeat.get_json()) == (200, moving.get_json())
    # the same id saying something else is refused, and changes nothing
    reused = carrier_event(api, carrier, "E-1", number, "delivered", "2026-11-25T09:00:00Z")
    assert (reused.status_code, error_code(reused)) == (409, "event_id_reused")
    assert app.last_position() == after

    delivered = carrier_event(api, carrier, "E-2", number, "delivered",
                              "2026-11-26T15:30:00+08:00")
    assert delivered.get_json()["result"] == "applied"
    late = carrier_event(api, carrier, "E-3", number, "out_for_delivery",
                         "2026-11-26T09:00:00+08:00", location="Xihu station")
    assert late.status_code == 200 and late.get_json()["result"] == "late"
    assert order_status(app, "O-1") == "delivered"

    view = api.get(f"/shipments/{shipment_id}", role="auditor",
                   min_position=late.get_json()["position"]).get_json()
    assert view["status"] == "delivered"
    assert view["delivered_at"] == "2026-11-26T07:30:00+00:00"
    carried = [(e["event_id"], e["status"], e["applied"], e["location"])
               for e in view["events"] if e["kind"] == "carrier"]
    assert carried == [("E-1", "in_transit", True, "Hangzhou hub"),
                       ("E-2", "delivered", True, None),
                       ("E-3", "out_for_delivery", False, "Xihu station")]
    assert view["events"][-1]["occurred_at"] == "2026-11-26T01:00:00+00:00"


def test_unknown_carriers_and_tracking_numbers_are_404(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    sent = dispatched(api, shipment_id)
    before = app.last_position()
    unknown_number = carrier_event(api, sent["carrier"], "E-1", "NOPE-1", "in_transit",
                                   "2026-11-25T08:00:00+08:00")
    assert (unknown_number.status_code, error_code(unknown_number)) == (404, "not_found")
    other_carrier = carrier_event(api, "EMS", "E-1", sent["tracking_number"], "in_transit",
                                  "2026-11-25T08:00:00+08:00")
    assert other_carrier.status_code == 404
    no_carrier = carrier_event(api, "YTO", "E-1", sent["tracking_number"], "in_transit",
                               "2026-11-25T08:00:00+08:00")
    assert no_carrier.status_code == 404
    assert app.last_position() == before


def test_bad_carrier_events_are_422_and_record_nothing(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    sent = dispatched(api, shipment_id)
    before = app.last_position()
    good = {"event_id": "E-1", "tracking_number": sent["tracking_number"],
            "status": "in_transit", "occurred_at": "2026-11-25T08:00:00+08:00"}
    for bad in ({**good, "occurred_at": "2026-11-25T08:00:00"},  # no offset
                {**good, "occurred_at": "yesterday"},
                {**good, "status": "lost"},
                {**good, "event_id": ""},
                {**good, "location": "a\nb"},
                {**good, "extra": True},
                {k: v for k, v in good.items() if k != "status"}):
        reply = api.post(f"/carriers/{sent['carrier']}/events", bad, role="integration")
        assert reply.status_code == 422, (bad, reply.get_json())
    assert app.last_position() == before


def test_carrier_events_out_of_time_are_409_and_record_nothing(api: Api) -> None:
    seed(api)
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)])
    sent = dispatched(api, shipment_id)  # at NOW; the events arrive at LATER
    before = app.last_position()
    for when in ("2026-11-23T23:59:59Z",  # more than a day before the dispatch
                 "2026-11-29T00:00:01Z",  # more than a day after it was received
                 "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59"):  # no such UTC
        refused = carrier_event(api, sent["carrier"], "E-1", sent["tracking_number"],
                                "delivered", when)
        assert refused.status_code == 409, (when, refused.get_json())
        assert error_code(refused) == "implausible_time"
    assert app.last_position() == before
    for when in ("2026-11-24T00:00:00Z", "2026-11-29T00:00:00Z", "2026-11-25t08:00:00.5z"):
        assert carrier_event(api, sent["carrier"], when, sent["tracking_number"],
                             "in_transit", when).status_code == 200, when


def test_the_order_is_delivered_when_every_shipment_is(api: Api) -> None:
    seed(api)
    app = the_app(api)
    shipments = paid_order(api, "O-1", [("TEA", 2), ("CUP", 1)])
    sent = [dispatched(api, shipment_id) for shipment_id in shipments]
    first = carrier_event(api, sent[0]["carrier"], "E-1", sent[0]["tracking_number"],
                          "delivered", "2026-11-26T10:00:00+08:00")
    assert first.status_code == 200 and order_status(app, "O-1") == "shipped"
    tracking = api.get("/orders/O-1/tracking", role="integration",
                       min_position=first.get_json()["position"]).get_json()
    assert [s["status"] for s in tracking["shipments"]] == ["delivered", "dispatched"]
    last = carrier_event(api, sent[1]["carrier"], "E-1", sent[1]["tracking_number"],
                         "delivered", "2026-11-27T10:00:00+08:00")
    assert last.get_json()["result"] == "applied"
    order = app.find(Order.create_id("O-1"))
    assert order.status == "delivered"
    assert order.delivered_at.isoformat() == "2026-11-27T10:00:00+08:00"
    tracking = api.get("/orders/O-1/tracking", role="auditor",
                       min_position=last.get_json()["position"]).get_json()
    assert tracking["order_id"] == "O-1"
    assert [(s["shipment_id"], s["status"]) for s in tracking["shipments"]] == \
        [(shipments[0], "delivered"), (shipments[1], "delivered")]
    assert all(s["events"][-1]["event_id"] == "E-1" for s in tracking["shipments"])


def test_tracking_of_an_order_without_shipments_and_of_no_order(api: Api) -> None:
    seed(api)
    app = the_app(api)
    paid_order(api, "O-1", [("TEA", 1)])
    assert api.get("/orders/NOPE/tracking").status_code == 404
    listed = api.get("/orders/O-1/tracking", min_position=app.last_position()).get_json()
    assert [s["status"] for s in listed["shipments"]] == ["created"]


# -- who may do what -------------------------------------------------------------------------

def test_roles(api: Api) -> None:
    seed(api)
    network(api)  # D1 is the distributor token's own; D2 is another distributor
    app = the_app(api)
    (shipment_id,) = paid_order(api, "O-1", [("TEA", 1)], distributor_id="D1")
    (theirs,) = paid_order(api, "O-2", [("CUP", 1)], distributor_id="D2")
    before = app.last_position()
    for role in ("operator", "warehouse", "integration", "auditor", "distributor"):
        assert api.post("/carriers", {**CARDS[0], "carrier": "YTO"},
                        role=role).status_code == 403, role
    for role in ("operator", "integration", "auditor", "distributor"):
        for step in ("pick", "pack", "dispatch"):
            assert api.post(f"/shipments/{shipment_id}/{step}", {},
                            role=role).status_code == 403, (role, step)
    for role in ("admin", "warehouse", "operator", "auditor"):
        assert api.post("/carriers/SF/events", {
            "event_id": "E-1", "tracking_number": "T-1", "status": "in_transit",
            "occurred_at": "2026-11-25T08:00:00+08:00"}, role=role).status_code == 403
    assert app.last_position() == before
    for role in ("warehouse", "admin", "operator", "auditor"):
        assert api.get(f"/shipments/{shipment_id}", role=role,
                       min_position=before).status_code == 200, role
    assert api.get(f"/shipments/{shipment_id}", role="integration").status_code == 403
    # a distributor never reads shipments directly; another's are not even there
    assert api.get(f"/shipments/{shipment_id}", role="distributor").status_code == 403
    assert api.get(f"/shipments/{theirs}", role="distributor").status_code == 404
    assert api.post(f"/shipments/{theirs}/pick", {}, role="distributor").status_code == 404
    # the tracking of an order: as the order itself
    for role in ("admin", "operator", "auditor", "integration", "distributor"):
        assert api.get("/orders/O-1/tracking", role=role).status_code == 200, role
    assert api.get("/orders/O-1/tracking", role="warehouse").status_code == 403
    assert api.get("/orders/O-2/tracking", role="distributor").status_code == 404
    assert api.post("/carriers", CARDS[0], role=None).status_code == 401
